"""A user's own learned-codec architecture, for the registry tests.

A process adds it with ``CLOUD3D_ARCH_MODULES=plugin_archs`` (``tests/`` on ``PYTHONPATH``):
compressai's scale hyperprior under a name of its own, so that its checkpoints and streams
name it.
"""

from models.architectures import Architecture, Bmshj2018Hyperprior


class TinyHyperprior(Bmshj2018Hyperprior):
    arch = "test-tiny-hyperprior"


ARCHITECTURES = [Architecture("test-tiny-hyperprior", TinyHyperprior)]
