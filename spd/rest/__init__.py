"""The REST API 1.2 without a web server: the route table (each route's D-Bus calls and its reply
shaper), the body fields and the D-Bus error -> HTTP answer. spd-gateway serves it with Sanic; spdctl
answers the same routes from the same code, so neither loads the other."""
