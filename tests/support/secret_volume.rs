//! A Secret volume as the kubelet writes it ([`SecretVolume`]), for the
//! tests of rotated secrets.

use std::fs;
use std::path::PathBuf;

/// A Secret volume as the kubelet writes it: `<dir>/token` is a symlink to
/// `..data/token`, `..data` a symlink to a timestamped directory that an
/// update replaces (new directory, `..data` renamed over, old one deleted).
pub struct SecretVolume {
    dir: PathBuf,
    generation: usize,
}

impl SecretVolume {
    pub fn new(dir: PathBuf, token: &str) -> Self {
        fs::create_dir_all(&dir).expect("secret dir");
        let mut volume = SecretVolume { dir, generation: 0 };
        volume.update(token);
        std::os::unix::fs::symlink("..data/token", volume.dir.join("token")).expect("token link");
        volume
    }

    pub fn token_path(&self) -> PathBuf {
        self.dir.join("token")
    }

    pub fn update(&mut self, token: &str) {
        let old = format!("..2026_11_23_{}", self.generation);
        self.generation += 1;
        let new = format!("..2026_11_23_{}", self.generation);
        fs::create_dir(self.dir.join(&new)).expect("timestamped dir");
        fs::write(self.dir.join(&new).join("token"), token).expect("token");
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).expect("data link");
        fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        let _ = fs::remove_dir_all(self.dir.join(old));
    }
}
