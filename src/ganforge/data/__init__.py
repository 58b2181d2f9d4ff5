"""Data: every source decoded once into an in-memory `Dataset` of tensors."""
from ganforge.data.dataset import Dataset, to_model_space, to_uint8
from ganforge.data.sources import list_sources, load_source

__all__ = ["Dataset", "list_sources", "load_source", "to_model_space", "to_uint8"]
