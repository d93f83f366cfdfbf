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
    #[error("{}: plugin built for app ABI version {found}, but this ringsocket loads versions {} to {}; rebuild it against this ringsocket's ringsocket.h / ringsocket-sdk", path.display(), abi::RS_ABI_MIN_VERSION, abi::RS_ABI_VERSION)]
    WrongVersion {
        /// The plugin path.
        path: PathBuf,
        /// The version the plugin declares.
        found: u32,
    },
    /// The descriptor's size field is smaller than its version's.
    #[error("{}: app descriptor declares size {found}, smaller than the {expected} bytes of ABI version {version}", path.display())]
    Truncated {
        /// The plugin path.
        path: PathBuf,
        /// The declared size.
        found: u32,
        /// The size of that version's `rs_app_descriptor`.
        expected: usize,
        /// The version it declares.
        version: u32,
    },
}

/// The periodic timer a descriptor asks for (ABI v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodicSpec {
    /// First and smallest interval.
    pub min: std::time::Duration,
    /// What `RS_TIMER_INCR` adds.
    pub incr: std::time::Duration,
    /// Largest interval.
    pub max: std::time::Duration,
}

impl PeriodicSpec {
    /// The spec from microseconds; `None` when `min_us` is 0 (no timer).
    pub fn from_micros(min_us: u64, incr_us: u64, max_us: u64) -> Option<PeriodicSpec> {
        use std::time::Duration;
        (min_us > 0).then(|| PeriodicSpec {
            min: Duration::from_micros(min_us),
            incr: Duration::from_micros(incr_us),
            max: Duration::from_micros(max_us.max(min_us)),
        })
    }
}

/// A plugin's callbacks, read from its descriptor once at load: a version-1 plugin has
/// none of version 2's.
#[derive(Debug, Clone, Copy)]
pub struct Callbacks {
    /// The ABI version the plugin was built for.
    pub version: u32,
    /// `init`.
    pub init: Option<abi::rs_init_cb>,
    /// `open`.
    pub open: Option<abi::rs_open_cb>,
    /// `read`.
    pub read: Option<abi::rs_read_cb>,
    /// `close`.
    pub close: Option<abi::rs_close_cb>,
    /// `timer` (one-shot).
    pub timer: Option<abi::rs_timer_cb>,
    /// `destroy`.
    pub destroy: Option<abi::rs_destroy_cb>,
    /// `event` (v2).
    pub event: Option<abi::rs_event_cb>,
    /// `periodic` (v2).
    pub periodic: Option<abi::rs_periodic_cb>,
    /// The periodic timer to start after init (v2).
    pub periodic_spec: Option<PeriodicSpec>,
    /// v4: decides upgrades.
    pub upgrade: Option<abi::rs_request_cb>,
    /// v4: answers plain HTTP requests.
    pub http: Option<abi::rs_request_cb>,
    /// v5: hears of clients' pings and pongs.
    pub ping: Option<abi::rs_ping_cb>,
    /// v6: takes operators' commands.
    pub control: Option<abi::rs_control_cb>,
}

/// A loaded plugin. The library stays loaded as long as this value lives, and the
/// server keeps it alive for the life of the process.
pub struct Plugin {
    /// Where it was loaded from.
    pub path: PathBuf,
    callbacks: Callbacks,
    _library: Library,
}

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
                " (it exports `ringsocket_app`: it is an app built for the original C RingSocket, whose binaries ringsocket does not load; rebuild its source with `-I` to ringsocket's include/ringsocket1 directory, see docs/apps.md)"
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
        if !(abi::RS_ABI_MIN_VERSION..=abi::RS_ABI_VERSION).contains(&version) {
            return Err(PluginError::WrongVersion {
                path: path.to_path_buf(),
                found: version,
            });
        }
        // SAFETY: every version puts the declared size in the third word.
        let size = unsafe { descriptor.cast::<u32>().add(2).read_unaligned() } as usize;
        let expected = match version {
            1 => abi::V1_DESCRIPTOR_SIZE,
            2 | 3 => abi::V2_DESCRIPTOR_SIZE,
            4 => abi::V4_DESCRIPTOR_SIZE,
            5 => abi::V5_DESCRIPTOR_SIZE,
            _ => std::mem::size_of::<abi::rs_app_descriptor>(),
        };
        if size < expected {
            return Err(PluginError::Truncated {
                path: path.to_path_buf(),
                found: size as u32,
                expected,
                version,
            });
        }
        // SAFETY: the descriptor is at least `expected` bytes of its version's layout,
        // which is a prefix of `rs_app_descriptor`; only fields inside it are read.
        let callbacks = unsafe { read_callbacks(descriptor, version) };
        Ok(Plugin {
            path: path.to_path_buf(),
            callbacks,
            _library: library,
        })
    }

    /// The plugin's callbacks.
    pub fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }
}

/// Copies the callbacks out of a descriptor of `version`.
///
/// # Safety
/// `d` must point at a descriptor of that version, at least as large as its layout.
unsafe fn read_callbacks(d: *const abi::rs_app_descriptor, version: u32) -> Callbacks {
    use std::ptr::addr_of;
    // SAFETY: every field read is inside the version's prefix (the v2 fields only for
    // version 2), per this function's contract; unaligned reads cost nothing here.
    unsafe {
        let mut c = Callbacks {
            version,
            init: addr_of!((*d).init).read_unaligned(),
            open: addr_of!((*d).open).read_unaligned(),
            read: addr_of!((*d).read).read_unaligned(),
            close: addr_of!((*d).close).read_unaligned(),
            timer: addr_of!((*d).timer).read_unaligned(),
            destroy: addr_of!((*d).destroy).read_unaligned(),
            event: None,
            periodic: None,
            periodic_spec: None,
            upgrade: None,
            http: None,
            ping: None,
            control: None,
        };
        if version >= 2 {
            c.event = addr_of!((*d).event).read_unaligned();
            c.periodic = addr_of!((*d).periodic).read_unaligned();
            c.periodic_spec = PeriodicSpec::from_micros(
                addr_of!((*d).periodic_min_us).read_unaligned(),
                addr_of!((*d).periodic_incr_us).read_unaligned(),
                addr_of!((*d).periodic_max_us).read_unaligned(),
            );
        }
        if version >= 4 {
            c.upgrade = addr_of!((*d).upgrade).read_unaligned();
            c.http = addr_of!((*d).http).read_unaligned();
        }
        if version >= 5 {
            c.ping = addr_of!((*d).ping).read_unaligned();
        }
        if version >= 6 {
            c.control = addr_of!((*d).control).read_unaligned();
        }
        c
    }
}
