//! Running one behavioural test on several storage backends: `async fn NAME(backend:
//! Backend)` becomes `fs::NAME`, `s3::NAME` and `azure::NAME`, so `cargo test --test it
//! ::azure::` runs every Azure variant.

/// Every backend: the filesystem, S3 (moto) and Azure (Azurite).
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(fs, Fs, $($name),*);
        $crate::backend_tests!(s3, S3, $($name),*);
        $crate::backend_tests!(azure, Azure, $($name),*);
    };
}

/// The object stores only: what the filesystem cannot do (several nodes on one store).
#[macro_export]
macro_rules! on_object_stores {
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(s3, S3, $($name),*);
        $crate::backend_tests!(azure, Azure, $($name),*);
    };
}

/// One module of tests on one backend.
#[macro_export]
macro_rules! backend_tests {
    ($module:ident, $backend:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::Backend::$backend).await
                }
            )*
        }
    };
}
