"""Watching a headless device from a browser: the ``http://`` (MJPEG) and ``webrtc://`` sinks.

A small aiohttp app on its own thread and event loop serves one page with the live
visualisation and a stats panel pushed over Server-Sent Events. The inference thread only hands
the latest frame over (:meth:`HttpSink.write` swaps a reference); encoding, viewers and slow
networks live on the server thread, so a stalled browser never slows the model.

Modules: :mod:`~edgeseg.web.uri` (``--sink`` URIs), :mod:`~edgeseg.web.stats` (the numbers),
:mod:`~edgeseg.web.hub` (latest frame, encoded once per tick), :mod:`~edgeseg.web.server`
(routes, token, client cap), :mod:`~edgeseg.web.page` (the HTML), :mod:`~edgeseg.web.webrtc`
(aiortc track and signalling), :mod:`~edgeseg.web.sink` (the :class:`~edgeseg.video.sinks.Sink`).
Nothing here is imported by ``import edgeseg``; aiohttp / aiortc are the ``web`` extra.
"""
