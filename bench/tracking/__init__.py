"""Runs sent to a tracking tool: MLflow (bench mlflow, bench run --track mlflow).

mlflow.py   one MLflow run per run, a nested run per trial, sent again only for what is new
metrics.py  what the records become as MLflow metrics, in named groups (curves/, final/, latency/, best/)
models.py   ONNX files as MLflow logged models with their signature
live.py     a run sent as it goes (bench run --track mlflow): each trial as it ends, the rest at the end"""
