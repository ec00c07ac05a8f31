"""gRPC plumbing shared by the services: server assembly, interceptors, metrics, clients."""
