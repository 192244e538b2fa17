"""``python -m cloud3d.cli ARGS``: the ``cloud3d`` command (:func:`cloud3d.cli.main`)."""

from cloud3d.cli import main

main()
