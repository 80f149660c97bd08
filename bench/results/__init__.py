"""What the store's rows say, computed and never measured: trials ranked, configurations over seeds, the public
records `--json` and the Python API return, deployment figures derived from stored measurements, and each trial's
diagnosis; and tables as column specs, for the terminal, the report and CSV alike.

    leaderboard.py  ranking, configurations over seeds
    records.py      the public records of trials, exports and measurements; noise warnings
    deployed.py     variants against fp32, engines against PyTorch, accuracy-latency points, batch curves
    recommend.py    what to ship: per deployment target, the fastest model within the accepted loss
    significance.py whether a difference is more than noise (Welch's t-test)
    percentiles.py  percentiles backed by enough samples: MLPerf LoadGen's early-stopping estimate
    serving.py      serving figures (scenarios) over repetitions, the unstable verdict, their table's columns
    diagnosis.py    diverged, overfitting, underfitting, ...
    columns.py      Column: a table column declared once, rendered to markdown and CSV (and rich by the CLI)
    tables.py       the tables the CLI and the report share (variants against fp32)"""
