"""Training one trial: the loop (best-validation checkpoint, resumable within an epoch), its state, optimizers and
schedules, the precision and layout it trains in, starting from trained weights, and the device.

    loop.py         train_trial: epochs of steps, validation, the kept checkpoint, the final figures
    state.py        an unfinished trial's training state, saved and continued
    checkpoints.py  best.pt: weights with their metadata and hash
    optim.py        optimizers, learning-rate schedules, lookahead
    precision.py    bf16 autocast and channels_last where they train faster (measured)
    weights.py      --weights, --freeze, --head-lr: fine-tuning
    batchnorm.py    --bn-recalibrate: batch-norm statistics recomputed for the weights they evaluate
    device.py       the training device, and the environment a run records"""
