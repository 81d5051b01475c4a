"""Request and response shapes of the native API (seed 004's resource model plus what running code needs),
one module per resource; a dialect's own shapes live in its slice (dialects/<name>/schemas.py).

Field names are seed 004's camelCase on the wire; Python attributes are snake_case. Responses are built by
the services layer from rows; routers only declare these as bodies and response models.

Naming: a body a client sends to make something is ``XCreate``, one that changes something ``XUpdate``, and
what the API answers ``XPublic``; a part of a body takes its body's suffix. The envelope is exempt: ``Wire``
(the base), ``Page`` with its ``Links``/``Href``, and the error body (``ErrorBody``, ``ErrorEntry``).
tests/test_architecture.py holds every model to this.
"""
