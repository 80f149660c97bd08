"""The deploy stage: a run's winners (or the trials named) exported to ONNX, made into int8/fp16 variants and
benchmarked in every engine, each step checked and recorded in the store.

    trials.py    winners, their models and images, their recorded files checked against their hashes
    export.py    torch.onnx export, checked by onnx and against PyTorch
    quantize.py  int8 and fp16 variants with onnxruntime's tools, checked on the test set
    timing.py    a trial's models timed in every engine; one file or module for scripts
    steps.py     the three steps and `deploy`, which the commands call in order
    predict.py   image files classified by the shipped model (bench predict)"""
