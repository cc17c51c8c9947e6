"""The work behind each endpoint (a module an endpoint, and :mod:`.jobs` that they share): the
routes parse a request and answer it, these build the job, judge it, record it and shape it."""
