"""ganforge: generative adversarial networks that train, sample and evaluate end to end."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ganforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


def load(run_or_checkpoint, device: str = "auto"):
    """The EMA generator of a run folder (newest checkpoint) or checkpoint file:
    `gen.sample(n, seed=...)`, `gen.sample_seeds(...)`, `gen.interpolate(...)`, `gen.invert(img)`,
    `gen.repair(img, fill)`. See ganforge.sample.LoadedGenerator."""
    from ganforge.sample import load_generator

    return load_generator(run_or_checkpoint, device)
