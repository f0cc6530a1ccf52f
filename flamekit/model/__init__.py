"""The FLAME model layer: files of every release, the skinned model, landmarks, UVs, textures.

Load with :func:`load_flame` (any FLAME pickle or flamekit ``.npz``), pose with
:class:`FlameModel`; the registry (:mod:`flamekit.model.registry`) finds registered files.
"""

from flamekit.model.data import (
    FlameData,
    FlameFileError,
    LandmarkEmbedding,
    MediapipeEmbedding,
    validate_flame_data,
)
from flamekit.model.flame import FlameModel, FlameOutput
from flamekit.model.landmarks import load_landmark_embedding, load_mediapipe_embedding
from flamekit.model.loader import convert_flame_to_npz, load_flame, save_flame_npz
from flamekit.model.registry import DemoHeadWarning, Registry, load_head
from flamekit.model.safe_pickle import UnsafePickleError
from flamekit.model.texture_space import (
    TextureSpace,
    export_flame_texture_npz,
    load_texture_space,
    save_texture_space,
)
from flamekit.model.uv import UVLayout, load_uv_layout

__all__ = [
    "DemoHeadWarning",
    "Registry",
    "TextureSpace",
    "export_flame_texture_npz",
    "load_head",
    "load_texture_space",
    "save_texture_space",
    "FlameData",
    "FlameFileError",
    "FlameModel",
    "FlameOutput",
    "LandmarkEmbedding",
    "MediapipeEmbedding",
    "UVLayout",
    "UnsafePickleError",
    "convert_flame_to_npz",
    "load_flame",
    "load_landmark_embedding",
    "load_mediapipe_embedding",
    "load_uv_layout",
    "save_flame_npz",
    "validate_flame_data",
]
