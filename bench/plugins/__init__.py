"""Plugins: the hooks they implement, their discovery through the entry-point group ``cnnbench`` (built-in and
third-party alike), and what the registries they filled offer.

    hookspecs.py        register_architectures, register_datasets, register_engines
    manager.py          loading, the allow-list, broken plugins, get_plugins()
    dataset_loading.py  datasets loaded through their plugins, with the run's options; a stored run's data, checked
    catalog.py          `bench list` (variants, parameters, FLOPs) and `bench plugins`' smoke check"""
