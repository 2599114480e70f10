"""The factories site.ini names: a WSGI application and a filter that wraps it."""


def make_greeter(global_config, greeting):
    def greeter(environ, start_response):
        body = greeting.encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return greeter


def make_tagger(global_config, tag):
    def wrap(app):
        def tagger(environ, start_response):
            def tagged_start_response(status, headers, exc_info=None):
                return start_response(status, [*headers, ("X-Tag", tag)], exc_info)

            return app(environ, tagged_start_response)

        return tagger

    return wrap
