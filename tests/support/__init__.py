"""What the tests are built from, in one place: settings, factories, resolvers, receivers,
the `phonebridge` command, the upstream simulator's constants, and waiting.

Test modules and conftest files import from here and never from each other; conftest files hold
only fixtures (and pytest hooks) built from these pieces.
"""
