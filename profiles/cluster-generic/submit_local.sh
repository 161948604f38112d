#!/usr/bin/env bash
# A stand-in scheduler for snakemake-executor-plugin-cluster-generic: runs each submitted job script
# in the background on this machine and prints its id, so job scripts, resources and the
# shared-filesystem assumptions are exercised exactly as on a real cluster.
#   submit_local.sh RULE MEM_MB RUNTIME GPU JOBSCRIPT
set -euo pipefail
rule=$1 mem=$2 runtime=$3 gpu=$4 jobscript=$5
dir=${FACESETS_CLUSTER_DIR:-.cluster-jobs}
mkdir -p "$dir"
id="local-$(date +%s%N)-$$"
printf '%s\t%s\tmem_mb=%s\truntime=%s\tgpu=%s\t%s\n' "$id" "$rule" "$mem" "$runtime" "$gpu" "$jobscript" >> "$dir/submitted.tsv"
nohup bash "$jobscript" > "$dir/$id.out" 2>&1 < /dev/null &
echo "$id"
