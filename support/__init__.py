"""Small shared support that every command and package uses: the one-line-error command line (command_line),
where the repository is and how results files record paths (paths), where commands write by default and where
they may not (output_places), atomic writes, strict JSON and folder locks (safe_files), the progress line
(progress), TensorFlow imported quietly (quiet_tensorflow) and the CPU's features (machine).
"""
