#!/usr/bin/env python3
"""bench/tlspipe.py: a byte pipe over mutual TLS, for clone.sh's upstream-style stream.

  tlspipe.py serve PORT CERT KEY CLIENT_CA   accepts one client, writes what it sends to stdout
  tlspipe.py send PORT CERT KEY SERVER_CA    sends stdin to 127.0.0.1:PORT, then closes

(`openssl s_client` sends nothing when its stdin is a pipe that ends before the handshake does,
so the two ends of upstream's cloner stream are this, in 1 MiB reads and writes.)
"""
import socket
import ssl
import sys

CHUNK = 1 << 20


def main():
    mode, port, cert, key, ca = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
    if mode == "serve":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        with socket.create_server(("127.0.0.1", port)) as listener:
            conn, _ = listener.accept()
            with ctx.wrap_socket(conn, server_side=True) as tls:
                out = sys.stdout.buffer
                while True:
                    data = tls.recv(CHUNK)
                    if not data:
                        break
                    out.write(data)
                out.flush()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            with ctx.wrap_socket(conn, server_hostname="127.0.0.1") as tls:
                inp = sys.stdin.buffer
                while True:
                    data = inp.read(CHUNK)
                    if not data:
                        break
                    tls.sendall(data)
                try:
                    tls.unwrap()
                except (ssl.SSLError, OSError):
                    pass  # the server closed once it had everything


if __name__ == "__main__":
    main()
