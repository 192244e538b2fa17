"""Folder compression: ``cloud3d archive`` / ``unarchive`` / ``bench-folder`` (see docs/archive.md).

* :mod:`baselines.archive.codecs`: the lossless image codecs archives add (WebP lossless,
  JPEG XL lossless, oxipng) and how an archive's ``--codec`` spec is resolved;
* :mod:`baselines.archive.container`: the on-disk format (a plain tar with a manifest),
  written and read with every check an untrusted file needs;
* :mod:`baselines.archive.sources`: which files of a dataset or folder go in;
* :mod:`baselines.archive.pack` / :mod:`baselines.archive.unpack`: the two directions,
  resumable and atomic;
* :mod:`baselines.archive.folder_bench`: tar, 7-Zip, zstd and the codecs on one folder.
"""
