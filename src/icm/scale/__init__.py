"""Scale-out: the Moderator and the data engine's model stages on a Ray cluster (:mod:`icm.scale.ray`)."""
