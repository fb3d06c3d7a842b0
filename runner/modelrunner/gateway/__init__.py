"""The gateway: one front door for many runner instances. It speaks the runner's dialects, routes
each request by model to an instance that holds it Ready, streams bytes through, and never loads
a model (it imports none of the runner's api/core/engine/scheduler/store/registry packages)."""
