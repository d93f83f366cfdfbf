//! Loading app plugins: `dlopen`, the descriptor symbol, and the ABI version check.

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use ringsocket_abi as abi;
use std::path::{Path, PathBuf};

/// Why a plugin was refused; every message names the plugin's path.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// `dlopen` failed (missing file, not an ELF object, unresolved symbol, ...).
    #[error("{}: cannot load plugin: {reason}", path.display())]
    Open {
        /// The plugin path.
        path: PathBuf,
        /// The `dlerror` text.
        reason: String,
    },
    /// The library does not export `ringsocket_plugin`.
    #[error("{}: not a ringsocket plugin: it does not export the symbol `ringsocket_plugin`{hint}", path.display())]
    MissingSymbol {
        /// The plugin path.
        path: PathBuf,
        /// Extra explanation (e.g. it is an original RingSocket app).
        hint: &'static str,
    },
    /// The descriptor does not start with the ABI magic.
    #[error("{}: `ringsocket_plugin` is not a ringsocket app descriptor (bad magic {magic:#010x})", path.display())]
    BadMagic {
        /// The plugin path.
        path: PathBuf,
        /// The value found.
        magic: u32,
    },
    /// The plugin was built for another ABI version.
    #[error("{}: plugin built for app ABI version {found}, but this ringsocket loads version {} only; rebuild it against this ringsocket's ringsocket.h / ringsocket-sdk", path.display(), abi::RS_ABI_VERSION)]
    WrongVersion {
        /// The plugin path.
        path: PathBuf,
        /// The version the plugin declares.
        found: u32,
    },
    /// The descriptor's size field is smaller than version 1's.
    #[error("{}: app descriptor declares size {found}, smaller than the {expected} bytes of ABI version 1", path.display())]
    Truncated {
        /// The plugin path.
        path: PathBuf,
        /// The declared size.
        found: u32,
        /// The size of `rs_app_descriptor`.
        expected: usize,
    },
}

/// A loaded plugin. The library stays loaded as long as this value lives, and the
/// server keeps it alive for the life of the process.
pub struct Plugin {
    /// Where it was loaded from.
    pub path: PathBuf,
    descriptor: *const abi::rs_app_descriptor,
    _library: Library,
}

// SAFETY: the descriptor is immutable static data inside the library, which `Plugin`
// keeps loaded; its callbacks are only ever invoked from the app's one thread.
unsafe impl Send for Plugin {}
// SAFETY: as above: shared access only reads the immutable descriptor.
unsafe impl Sync for Plugin {}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("path", &self.path).finish()
    }
}

impl Plugin {
    /// Loads the plugin at `path` and checks its descriptor.
    ///
    /// # Errors
    /// A [`PluginError`] naming the path and what is wrong.
    pub fn load(path: &Path) -> Result<Plugin, PluginError> {
        let open_err = |e: libloading::Error| PluginError::Open {
            path: path.to_path_buf(),
            // libloading's own text is only "dlopen failed"; the loader's reason (e.g.
            // "No such file or directory") is its source.
            reason: std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()),
        };
        // SAFETY: loading a library runs its initialisers, i.e. foreign code. Plugin paths
        // come only from the configuration file, which the operator controls (it is
        // read as root before privileges are dropped). RTLD_NOW makes missing symbols
        // fail here rather than at the first call.
        let library = unsafe { Library::open(Some(path.as_os_str()), RTLD_NOW | RTLD_LOCAL) }
            .map_err(open_err)?;
        // SAFETY: we only take the symbol's address; nothing is read through it yet.
        let symbol = unsafe { library.get::<*const u8>(abi::DESCRIPTOR_SYMBOL) };
        let Ok(symbol) = symbol else {
            // SAFETY: as above, only the address is looked up.
            let legacy = unsafe { library.get::<*const u8>(abi::LEGACY_SYMBOL) }.is_ok();
            let hint = if legacy {
                " (it exports `ringsocket_app`: it is an app for the original C RingSocket, whose ABI ringsocket does not load)"
            } else {
                ""
            };
            return Err(PluginError::MissingSymbol {
                path: path.to_path_buf(),
                hint,
            });
        };
        let descriptor = *symbol as *const abi::rs_app_descriptor;
        if descriptor.is_null() {
            return Err(PluginError::MissingSymbol {
                path: path.to_path_buf(),
                hint: " (it is NULL)",
            });
        }
        // SAFETY: a data symbol of at least 8 bytes is what any plugin of any version
        // exports first (magic, version); only those are read before the checks.
        let (magic, version) = unsafe {
            let words = descriptor.cast::<u32>();
            (words.read_unaligned(), words.add(1).read_unaligned())
        };
        if magic != abi::RS_ABI_MAGIC {
            return Err(PluginError::BadMagic {
                path: path.to_path_buf(),
                magic,
            });
        }
        if version != abi::RS_ABI_VERSION {
            return Err(PluginError::WrongVersion {
                path: path.to_path_buf(),
                found: version,
            });
        }
        // SAFETY: version 1 guarantees the third word is the declared size.
        let size = unsafe { descriptor.cast::<u32>().add(2).read_unaligned() };
        let expected = std::mem::size_of::<abi::rs_app_descriptor>();
        if (size as usize) < expected {
            return Err(PluginError::Truncated {
                path: path.to_path_buf(),
                found: size,
                expected,
            });
        }
        Ok(Plugin {
            path: path.to_path_buf(),
            descriptor,
            _library: library,
        })
    }

    /// The plugin's descriptor.
    pub fn descriptor(&self) -> &abi::rs_app_descriptor {
        // SAFETY: checked in `load` to be a version-1 descriptor of full size, inside
        // the library that `self` keeps loaded.
        unsafe { &*self.descriptor }
    }
}
