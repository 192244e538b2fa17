"""cloud3d_dataset: the on-disk dataset format (layout, manifest, splits, verify, torch Dataset).

Importing this package is cheap: heavy parts (torch) load only in
:mod:`cloud3d_dataset.torch_dataset`.
"""
