"""What one host process knows about itself (not a port: nothing else could stand in for them).

`instance_slot`: its id in the shared rate-limit state, and its predecessor's (embedded
backend). `client_key_secret`: the secret client keys are HMACs under, shared by every
instance. The composition root (`shared.bootstrap`) calls them directly.
"""
