"""What changed: the change log as JSON (`/changes`), Atom feeds per public layer and the WZDx 4.2 feed."""
