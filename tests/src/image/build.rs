//! From a recipe to an image: its layer, its config (whose digest is the image ID) and its
//! reference. Nothing is written here; [`super::archive`] writes the result.

use super::config::image_config;
use super::digest::Digest;
use super::layer::{Layer, build_layer};
use super::recipe::{ImageRecipe, Platform};
use super::reference::ImageRef;
use crate::Result;

/// A built single-layer image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub reference: ImageRef,
    /// The config digest: Docker's and containerd's image ID.
    pub id: Digest,
    /// The image config JSON.
    pub config: Vec<u8>,
    pub layer: Layer,
}

impl Image {
    /// Builds the image of `recipe` for `platform` (host files are read now).
    pub fn build(recipe: &ImageRecipe, platform: &Platform) -> Result<Image> {
        let layer = build_layer(&recipe.files)?;
        let config = image_config(recipe, platform, &layer.diff_id);
        let id = Digest::of(&config);
        let reference = ImageRef::for_image(&recipe.name, &id)?;
        Ok(Image {
            reference,
            id,
            config,
            layer,
        })
    }
}
