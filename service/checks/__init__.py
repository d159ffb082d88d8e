"""Submitting checks to upstream on a client's behalf (`submit.py`) and upstream's completion
callback taken as a hint (`callback_hints.py`): services that the REST routes (and the portal)
call, with their decisions in service/domain/checks.py and their queries in service/store/."""
