"""facesets: sort a photo library by face identity into swap-ready facesets."""

__version__ = "0.1.0"
