"""The round and the units the service is made of: observe, commit, act, publish."""
