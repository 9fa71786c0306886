"""Views of the site, each kept current between rounds: the observer (one round's
look at every director), keepalived's own view, the ARP view, push detection, and
``[ha]``'s peers and their views. They read; they never act (never import ``acts``)."""
