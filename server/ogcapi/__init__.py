"""pygeoapi wired to the catalog: configuration per access level, routes, OpenAPI, downloads, params."""
