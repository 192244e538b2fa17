"""The BD values of a report, in one place: which ones, their CSV columns and their titles.

Both report writers import this table: :mod:`baselines.report` computes the values into
``bd_rate.csv`` (:func:`baselines.report.bd_table`) and :mod:`baselines.html_report` shows
them on the page under their titles.
"""

from __future__ import annotations

__all__ = ["BD_COLUMNS", "BD_TITLES", "BD_VALUES"]

#: the BD values: (name, what it is, quality column, axis of its overlap)
BD_VALUES: tuple[tuple[str, str, str, str], ...] = (
    ("bd_rate", "BD-rate", "mean_psnr", "quality"),
    ("bd_psnr", "BD-PSNR", "mean_psnr", "rate"),
    ("bd_rate_msssim", "BD-rate MS-SSIM", "ms_ssim_db", "quality"),
)
#: value column of each BD value in ``bd_rate.csv`` (``bd_rate_pct``...)
BD_COLUMNS: dict[str, str] = {"bd_rate": "bd_rate_pct", "bd_psnr": "bd_psnr_db",
                              "bd_rate_msssim": "bd_rate_msssim_pct"}
#: heading of each BD value's column on the report page
BD_TITLES: dict[str, str] = {"bd_rate": "BD-rate % (PSNR)", "bd_psnr": "BD-PSNR dB",
                             "bd_rate_msssim": "BD-rate % (MS-SSIM)"}
