"""Scoring a trained model: per-image metrics and grouping (metrics), the numpy baselines (baselines),
recognition with raw and neutralised probes (recognition), the written report (report), the results grids
and previews (plotting), and --mode test itself (testing).
"""
