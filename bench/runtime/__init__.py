"""Running a model for its figures: the engine registry (what engine plugins registered), onnxruntime sessions on
the provider really used, the timing protocol every engine is measured under, and measuring engines with it.

    engines.py   EngineModel (what an engine receives), the engine registry
    onnxrt.py    onnxruntime sessions, and why a provider cannot run
    protocol.py  the timing protocol: BenchSettings, Measurement, timed runs, percentiles
    measure.py   one engine x device x precision x batch under the protocol, every one of a model, its logits
    scenarios.py serving scenarios on one session: single-stream, offline, server (Poisson, max QPS under a bound)
    serve.py     the scenarios of one engine x device x precision, every one of a model: rows for the store"""
