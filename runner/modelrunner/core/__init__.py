"""The dialect-neutral core: model management and inference services over store and engine."""
