"""The speed benchmark that bench.py (its command) runs: worker processes and their interleaved measurement
(harness), the workers that run the project's training and inference (workers), its Keras 3 and PyTorch peers
(peers), the timing of windows (timing), and the report, its table and verdicts (report).
"""
