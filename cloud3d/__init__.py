"""cloud3d core: what every stage shares (``cloud3d.cli``, the command line, stands above the stages).

Shared by every stage (import freely, from any stage)::

    cloud3d.errors       Cloud3dError and its family (CodecError, CodecUnavailable),
                         one-line messages for OS errors
    cloud3d.atomic       atomic file writes (temp file in the same folder, fsync, rename)
    cloud3d.imageio      PNG/image decode and encode, PNG header and chunk checks
    cloud3d.resolutions  the named resolutions (720p, 1080p) and how a size is named
    cloud3d.provenance   SHA-256 of files and bytes, versions of tools and packages,
                         UTC timestamps, a description of the machine
    cloud3d.lazy         lazy_exports: each stage's public face (``__all__``, imports on use)

Above every stage, a layer of its own (nothing imports it; it only orchestrates)::

    cloud3d.cli            the ``cloud3d`` command: the click group, ``main`` and one-line errors
    cloud3d.cli.commands   command registration: gathers each stage's click commands
    cloud3d.cli.demo       ``cloud3d demo``: the whole study on built-in synthetic frames

Stage order for imports: cloud3d core < capture < cloud3d_dataset < analysis < models <
baselines < cloud3d.cli. The core imports no stage (tests/test_layers.py checks the order).
"""
