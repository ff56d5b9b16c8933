package postgres

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner"
)

// The tools get every libpq parameter of the DSN, in either form, and
// never its password or a pgx-only setting.
func TestLibpq_KeepsEveryParameterButThePassword(t *testing.T) {
	tests := []struct {
		dsn, db  string
		extra    []string
		want     []string
		not      []string
		password string
	}{
		{
			dsn:      "postgres://app:s%40cret@db1.example:5433,db2.example/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem&target_session_attrs=read-write&pool_max_conns=4&options=-c%20work_mem%3D8MB",
			db:       "shop_next",
			want:     []string{"host='db1.example,db2.example'", "port='5433,'", "user='app'", "dbname='shop_next'", "sslmode='verify-full'", "sslrootcert='/etc/ca.pem'", "target_session_attrs='read-write'", "options='-c work_mem=8MB'", "connect_timeout='15'", "keepalives_idle='30'"},
			not:      []string{"s@cret", "pool_max_conns", "shop'"},
			password: "s@cret",
		},
		{
			dsn:      `host=127.0.0.1 port=5432 user=bob password='it\'s' dbname=app sslmode=require sslcert=/c.pem sslkey=/k.pem sslcrl=/crl.pem options='-c search_path=app' connect_timeout=3`,
			extra:    []string{readOnly},
			want:     []string{"sslmode='require'", "sslcert='/c.pem'", "sslkey='/k.pem'", "sslcrl='/crl.pem'", "options='-c search_path=app -c default_transaction_read_only=on'", "connect_timeout='3'", "dbname='app'"},
			not:      []string{"it's", "password"},
			password: "it's",
		},
	}
	for _, tt := range tests {
		conn, env, done, err := libpq(tt.dsn, tt.db, tt.extra...)
		if err != nil {
			t.Fatalf("%s: %v", tt.dsn, err)
		}
		// The password is in a passfile only its owner reads, not in the
		// environment (which /proc shows) or the connection string.
		var passfile string
		for _, kv := range env {
			if strings.Contains(kv, tt.password) {
				t.Errorf("the environment has the password: %s", kv)
			}
			if f, ok := strings.CutPrefix(kv, "PGPASSFILE="); ok {
				passfile = f
			}
		}
		data, err := os.ReadFile(passfile)
		if st, serr := os.Stat(passfile); err != nil || serr != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("passfile %q: %v %v", passfile, err, st)
		} else if want := "*:*:*:*:" + strings.ReplaceAll(tt.password, ":", `\:`) + "\n"; string(data) != want {
			t.Errorf("passfile holds %q, want %q", data, want)
		}
		done()
		if _, err := os.Stat(passfile); err == nil {
			t.Errorf("done left the passfile %s", passfile)
		}
		for _, w := range tt.want {
			if !strings.Contains(conn, w) {
				t.Errorf("connection string lacks %s:\n%s", w, conn)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(conn, n) {
				t.Errorf("connection string has %q:\n%s", n, conn)
			}
		}
	}
}

// The tools inherit no chat token and no variable a DSN was expanded
// from, only what exec steps get and libpq's own settings.
func TestToolEnv_IsFiltered(t *testing.T) {
	t.Setenv("SLACK_BOT_TOKEN", "xoxb-secret")
	t.Setenv("PROD_PASSWORD", "hunter2")
	t.Setenv("PGSSLMODE", "verify-full")
	env := strings.Join(toolEnv(), "\n")
	if strings.Contains(env, "xoxb-secret") || strings.Contains(env, "hunter2") {
		t.Fatalf("a tool would inherit a secret:\n%s", env)
	}
	if !strings.Contains(env, "PGSSLMODE=verify-full") || !strings.Contains(env, "PATH=") {
		t.Fatalf("a tool would lose libpq's settings or PATH:\n%s", env)
	}
}

// A verify-full DSN is honoured by pg_dump, pg_restore and psql: against a
// server whose certificate another CA signed, each refuses to connect;
// with the right CA, each connects. Before, the tools got no sslmode and
// fell back to libpq's "prefer", which a man in the middle can downgrade.
func TestTools_HonourVerifyFull(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t, "stagebot test CA")
	other, _ := newCA(t, "another CA")
	certPEM, keyPEM := serverCert(t, ca, caKey)
	srv, err := pgtest.Start(context.Background(), pgtest.Options{
		Files:    map[string][]byte{"server.crt": certPEM, "server.key": keyPEM},
		Settings: map[string]string{"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	right, wrong := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	os.WriteFile(right, pemCert(ca), 0o644)
	os.WriteFile(wrong, pemCert(other), 0o644)
	dump := filepath.Join(dir, "empty.dump")
	bin, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	tl := tools{dump: filepath.Join(bin, "pg_dump"), restore: filepath.Join(bin, "pg_restore"), psql: filepath.Join(bin, "psql")}
	// A custom-format dump for pg_restore to restore (made without TLS checks).
	conn, penv, done, err := libpq(srv.DSN("postgres"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	var log bytes.Buffer
	if err := tool(context.Background(), &runner.Env{Log: &log}, penv, tl.dump, "-Fc", "-f", dump, "--no-password", "-d", conn).Run(); err != nil {
		t.Fatalf("pg_dump for the fixture: %v\n%s", err, log.String())
	}
	for _, root := range []struct {
		file string
		ok   bool
	}{{wrong, false}, {right, true}} {
		dsn := strings.Replace(srv.DSN("postgres"), "sslmode=disable", "sslmode=verify-full&sslrootcert="+root.file, 1)
		for name, args := range map[string][]string{
			"pg_dump":    {tl.dump, "--schema-only", "-f", os.DevNull},
			"psql":       {tl.psql, "-X", "-c", "select 1"},
			"pg_restore": {tl.restore, dump},
		} {
			conn, penv, done, err := libpq(dsn, "")
			if err != nil {
				t.Fatal(err)
			}
			defer done()
			var log SyncBuffer // the tool's stdout and stderr are written at once
			cmd := tool(context.Background(), &runner.Env{Log: &log}, penv, args[0], append(args[1:], "--no-password", "-d", conn)...)
			err = cmd.Run()
			switch {
			case root.ok && err != nil:
				t.Errorf("%s with the right CA: %v\n%s", name, err, log.String())
			case !root.ok && err == nil:
				t.Errorf("%s connected to a server whose certificate another CA signed (sslmode=verify-full):\n%s", name, log.String())
			case !root.ok && !strings.Contains(log.String(), "certificate verify failed"):
				t.Errorf("%s failed (%v), but not on the certificate:\n%s", name, err, log.String())
			}
		}
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func serverCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
