"""Calibrated 4-bit (``q4cal``): a data-aware search of NF4-friendly weights, then ordinary NF4.

:mod:`.nf4` (NF4 rounding in torch), :mod:`.search` (statistics, entropy blocks, the block-wise search
of scales and clipping, folding), :mod:`.geochat` (calibration set, capture on GeoChat, the cache
entry). The engine's job and ``rsvg model calibrate`` call :func:`.geochat.calibrate_model`.
"""
