"""What every stage uses, with no torch: errors that reach the user as one line, atomic files, how figures are
written, statuses and precisions, the machine (CPU, memory), how much to trust a timed figure, thread and signal
settings, quieting noisy tools, the version.

    errors.py    BenchError, UsageError: one line and an exit status
    files.py     atomic writes, a file's SHA-256, no-room errors
    formats.py   how figures and trial labels are written, in tables and reports alike
    status.py    the statuses of runs, trials, exports, variants and measurements; precisions
    machine.py   the CPU, its features, the memory a new allocation may take
    noise.py     what the rest of the machine did during a measurement (noisy figures)
    threads.py   OpenMP's wait policy, set before torch loads
    signals.py   SIGTERM as Ctrl-C
    quiet.py     silencing tools that print from C++
    version.py   cnnbench's version"""
