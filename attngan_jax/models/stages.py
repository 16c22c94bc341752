"""The generator's image pyramid and the sizes an experiment's loader makes, defined once.

No JAX here: ``config_lib`` (and so every config file) imports it and re-exports both functions.
"""


def stage_sizes(base_size: int, num_stages: int) -> tuple[int, ...]:
    """The generator's image size at every stage: ``base_size * 2**i`` (64, 128, 256 originally).

    The one definition of the pyramid: the loader's sizes, the checks of ``config_lib.validate``
    and ``ModelSpec``, and converted releases all take it from here.
    """
    return tuple(int(base_size) * 2**i for i in range(int(num_stages)))


def image_sizes(config) -> tuple[int, ...]:
    """The image sizes the loader makes for ``config``: ``data.image_sizes``, or derived from it.

    ``data.image_sizes`` is left empty by the GAN experiment files and derived here: the stages'
    pyramid (:func:`stage_sizes` of ``model.base_size`` and ``model.num_stages``) for the GAN and
    the demo; for DAMSM pretraining the Inception-v3 input, 299 (the original's
    ``TREE.BASE_SIZE: 299``), or the pyramid for the small trunk (trained at the GAN's largest
    size). Set explicitly, it is used as given (``config_lib.validate`` checks it against the
    stages).

    Args:
        config: an experiment config (``attngan_jax.config_lib``).
    """
    if config.data.image_sizes:
        return tuple(config.data.image_sizes)
    if config.phase == "damsm" and config.model.image_trunk == "inception":
        return (299,)
    return stage_sizes(config.model.base_size, config.model.num_stages)
