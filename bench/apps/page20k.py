"""page20k: a 20 KB HTML page (a table of varied text), returned as a one-item list; what
--compress-responses is for."""

ROWS = "".join(
    f"<tr><td>{index}</td><td>item-{index * 7919 % 10007}</td>"
    f"<td>{'lorem ipsum dolor sit amet'[index % 11 :]}</td></tr>\n"
    for index in range(300)
)
BODY = f"<!doctype html><html><body><table>\n{ROWS}</table></body></html>\n".encode()


def application(environ, start_response):
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]
