"""cloud3d core: what every stage shares, and the command line above the stages.

Shared by every stage (import freely, from any stage)::

    cloud3d.errors       Cloud3dError and its family (CodecError, CodecUnavailable),
                         one-line messages for OS errors
    cloud3d.atomic       atomic file writes (temp file in the same folder, fsync, rename)
    cloud3d.imageio      PNG/image decode and encode, PNG header and chunk checks
    cloud3d.resolutions  the named resolutions (720p, 1080p) and how a size is named
    cloud3d.provenance   SHA-256 of files and bytes, versions of tools and packages,
                         UTC timestamps, a description of the machine
    cloud3d.lazy         lazy_exports: each stage's public face (``__all__``, imports on use)

Above every stage (nothing imports these; they only orchestrate)::

    cloud3d.cli          the ``cloud3d`` command: gathers each stage's click commands
    cloud3d.demo         ``cloud3d demo``: the whole study on built-in synthetic frames

Stage order for imports: capture < cloud3d_dataset < analysis < models < baselines.
"""
