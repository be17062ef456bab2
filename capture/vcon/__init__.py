"""The vCon model (draft-ietf-vcon-vcon-core): pure data, no I/O."""
