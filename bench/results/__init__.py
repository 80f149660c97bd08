"""What the store's rows say, computed and never measured: trials ranked, configurations over seeds, the public
records `--json` and the Python API return, deployment figures derived from stored measurements, and each trial's
diagnosis.

    leaderboard.py  ranking, configurations over seeds
    records.py      the public records of trials, exports and measurements; noise warnings
    deployed.py     variants against fp32, engines against PyTorch, accuracy-latency points, batch curves
    diagnosis.py    diverged, overfitting, underfitting, ..."""
