"""What acts on the site: the fencer and its levels, the track files that carry a
deny to keepalived, and the notification sender."""
