//! A test CA made with Debian's `openssl`: a root, an intermediate, and server
//! certificates for 127.0.0.1 and localhost issued with a chosen serial number.

use super::process::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A new P-256 key, unencrypted: what every `openssl req` here makes.
const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

pub struct TestCa {
    pub dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A root CA and an intermediate signed by it.
    pub fn new() -> TestCa {
        let dir = TempDir::new("ca");
        let d = dir.path();
        std::fs::write(
            d.join("ca.ext"),
            "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        std::fs::write(
            d.join("srv.ext"),
            "basicConstraints=CA:false\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                &["req", "-x509"][..],
                &EC,
                &[
                    "-keyout",
                    "root.key",
                    "-out",
                    "root.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=corral test root",
                    "-addext",
                    "basicConstraints=critical,CA:true",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                &["req"][..],
                &EC,
                &[
                    "-keyout",
                    "int.key",
                    "-out",
                    "int.csr",
                    "-subj",
                    "/CN=corral test intermediate",
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "int.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-set_serial",
                "7",
                "-days",
                "2",
                "-extfile",
                "ca.ext",
                "-out",
                "int.pem",
            ],
        );
        TestCa { dir }
    }

    /// The root certificate, for clients' `--cacert`.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    /// A certificate for 127.0.0.1 with `serial`, its chain (leaf, then intermediate) and
    /// key written to `cert` and `key`.
    pub fn issue(&self, serial: u32, cert: &Path, key: &Path) {
        let d = self.dir.path();
        let name = format!("srv{serial}");
        let (k, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            d,
            &[
                &["req"][..],
                &EC,
                &["-keyout", &k, "-out", &csr, "-subj", "/CN=localhost"],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "int.pem",
                "-CAkey",
                "int.key",
                "-set_serial",
                &serial.to_string(),
                "-days",
                "2",
                "-extfile",
                "srv.ext",
                "-out",
                &pem,
            ],
        );
        let chain = [
            std::fs::read(d.join(&pem)).unwrap(),
            std::fs::read(d.join("int.pem")).unwrap(),
        ]
        .concat();
        // Replaced by rename, as certbot and friends do, so a reader never sees half a file.
        let tmp = cert.with_extension("tmp");
        std::fs::write(&tmp, chain).unwrap();
        std::fs::rename(&tmp, cert).unwrap();
        std::fs::copy(d.join(&k), key).unwrap();
    }
}
