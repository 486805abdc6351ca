import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PEM files of one certificate authority and what it signed, made by `openssl` at test time. */
export interface TlsFiles {
  /** The CA certificate clients and servers verify against. */
  ca: string;
  /** The server certificate (127.0.0.1, ::1, localhost) and its key. */
  cert: string;
  key: string;
  /** A client certificate signed by the same CA, for mutual TLS. */
  clientCert: string;
  clientKey: string;
}

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore', timeout: 20000 });
}

/**
 * A throwaway CA with a server and a client certificate for loopback, and a
 * second, unrelated CA (`otherCa`) whose trust must not be enough to connect.
 * EC keys: made in milliseconds, unlike RSA.
 */
export class TestCertificates {
  private constructor(readonly dir: string, readonly files: TlsFiles, readonly otherCa: string) {}

  static create(): TestCertificates {
    const dir = mkdtempSync(join(tmpdir(), 'sr-tls-'));
    const path = (name: string) => join(dir, name);
    const key = (name: string) => openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', path(name));
    const ca = (name: string) => {
      key(`${name}.key`);
      openssl('req', '-x509', '-new', '-key', path(`${name}.key`), '-days', '2', '-subj', `/CN=${name}`, '-out', path(`${name}.crt`));
    };
    const signed = (name: string, extensions: string) => {
      key(`${name}.key`);
      openssl('req', '-new', '-key', path(`${name}.key`), '-subj', `/CN=${name}`, '-out', path(`${name}.csr`));
      writeFileSync(path(`${name}.ext`), extensions);
      openssl('x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.crt'), '-CAkey', path('ca.key'), '-CAcreateserial',
        '-days', '2', '-extfile', path(`${name}.ext`), '-out', path(`${name}.crt`));
    };
    ca('ca');
    ca('other-ca');
    signed('server', 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    signed('client', 'extendedKeyUsage=clientAuth\n');
    return new TestCertificates(dir, {
      ca: path('ca.crt'), cert: path('server.crt'), key: path('server.key'), clientCert: path('client.crt'), clientKey: path('client.key'),
    }, path('other-ca.crt'));
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
