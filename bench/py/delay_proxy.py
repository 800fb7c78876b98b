"""A TCP proxy adding a fixed one-way delay to every chunk: latency without a cap on throughput.

    python3 bench/py/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

Forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT; each chunk read is written DELAY_MS
after it arrived, in order, in both directions (a round trip gains 2 x DELAY_MS). Prints
`ready` once listening. Used by bench/README.md section 5 (a PostgreSQL one round trip away).
"""
import asyncio, sys, time
LISTEN, TARGET, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000.0

async def pump(reader, writer):
    q = asyncio.Queue()
    async def read():
        while True:
            data = await reader.read(65536)
            await q.put((time.monotonic(), data))
            if not data:
                return
    async def write():
        while True:
            t, data = await q.get()
            wait = t + DELAY - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()
    await asyncio.gather(read(), write(), return_exceptions=True)

async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", TARGET)
    await asyncio.gather(pump(cr, sw), pump(sr, cw), return_exceptions=True)

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
