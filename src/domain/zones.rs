//! What a try-on puts on the person: a closed set of zones, each with a fixed prompt written
//! for Nano Banana edit (image 1 = the person, image 2 = the item). Clients send the zone
//! name; a prompt never comes from a client.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    /// Shirts, T-shirts, blouses, sweaters, hoodies.
    Top,
    /// Trousers, jeans, skirts, shorts.
    Bottom,
    /// Dresses and jumpsuits.
    Dress,
    /// A complete look: everything in the item photo.
    FullOutfit,
    /// Jackets, coats, blazers, worn over what the person has on.
    Outerwear,
    /// Shoes, boots, sneakers, sandals.
    Shoes,
    /// Hats, caps, beanies.
    Headwear,
    /// Eyeglasses and sunglasses.
    Glasses,
    Earrings,
    /// Necklaces and pendants.
    Necklace,
    /// Watches and bracelets.
    Wrist,
    /// Handbags, backpacks, clutches.
    Bag,
    /// Scarves and shawls.
    Scarf,
    /// Swimsuits and bikinis.
    Swimwear,
}

const PRESERVE: &str = "Keep the person from the first image exactly as they are: the same face, \
identity, expression, hairstyle, skin tone, body shape, pose and hands, the same background, camera \
angle, framing and lighting. Reproduce the item from the second image faithfully: its exact colours, \
pattern, print, logos, texture, material and details, at a realistic size for this person. Make it \
photorealistic, with shadows, folds and reflections consistent with the scene's light. Change nothing \
else and add no other objects, text or watermarks.";

impl Zone {
    pub const ALL: [Zone; 14] = [
        Zone::Top,
        Zone::Bottom,
        Zone::Dress,
        Zone::FullOutfit,
        Zone::Outerwear,
        Zone::Shoes,
        Zone::Headwear,
        Zone::Glasses,
        Zone::Earrings,
        Zone::Necklace,
        Zone::Wrist,
        Zone::Bag,
        Zone::Scarf,
        Zone::Swimwear,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Top => "top",
            Zone::Bottom => "bottom",
            Zone::Dress => "dress",
            Zone::FullOutfit => "full_outfit",
            Zone::Outerwear => "outerwear",
            Zone::Shoes => "shoes",
            Zone::Headwear => "headwear",
            Zone::Glasses => "glasses",
            Zone::Earrings => "earrings",
            Zone::Necklace => "necklace",
            Zone::Wrist => "wrist",
            Zone::Bag => "bag",
            Zone::Scarf => "scarf",
            Zone::Swimwear => "swimwear",
        }
    }

    pub fn parse(s: &str) -> Option<Zone> {
        Zone::ALL.into_iter().find(|z| z.as_str() == s)
    }

    /// The zone-specific instruction; the full prompt adds what must be preserved.
    fn task(self) -> &'static str {
        match self {
            Zone::Top => {
                "Dress the person in the first image in the top from the second image, replacing \
                only the garment they wear on their upper body. Fit it to their torso, shoulders and arms with \
                natural drape and creases; keep their trousers or skirt unchanged."
            }
            Zone::Bottom => {
                "Dress the person in the first image in the trousers, skirt or shorts from the \
                second image, replacing only what they wear below the waist. Match the item's length, cut and \
                rise; keep their top and shoes unchanged."
            }
            Zone::Dress => {
                "Dress the person in the first image in the dress or jumpsuit from the second \
                image, replacing their current clothes from shoulders to hem. Keep the item's neckline, \
                sleeves, silhouette and length; keep their shoes and accessories."
            }
            Zone::FullOutfit => {
                "Dress the person in the first image in the complete outfit shown in the \
                second image, replacing their clothes with every garment of that outfit, layered as shown."
            }
            Zone::Outerwear => {
                "Put the jacket or coat from the second image on the person in the first \
                image, worn over their current clothes, which stay visible where the outerwear is open. Keep \
                its length, collar, closures and sleeve length."
            }
            Zone::Shoes => {
                "Put the shoes from the second image on the person's feet in the first image, \
                replacing their current footwear, in the same foot position, with contact shadows on the \
                ground. Keep their trousers' hems as they fall."
            }
            Zone::Headwear => {
                "Put the hat or cap from the second image on the person's head in the first \
                image, sitting naturally on their hair at the angle of their head, with a soft shadow on the \
                forehead where the brim would cast one."
            }
            Zone::Glasses => {
                "Put the glasses from the second image on the person's face in the first image, \
                resting on the bridge of the nose and the ears, aligned with the eyes, scaled to the face. \
                Keep the eyes visible through clear lenses; tinted lenses keep their tint."
            }
            Zone::Earrings => {
                "Put the earrings from the second image on the person's ears in the first \
                image, hanging naturally from the earlobes at the right scale. Where hair covers an ear, leave \
                the hair as it is."
            }
            Zone::Necklace => {
                "Put the necklace or pendant from the second image around the person's neck in \
                the first image, lying on the skin or clothes at its natural length, following the neckline."
            }
            Zone::Wrist => {
                "Put the watch or bracelet from the second image on the person's wrist in the \
                first image, wrapped around the wrist at a realistic size, on the wrist that is most visible."
            }
            Zone::Bag => {
                "Give the person in the first image the bag from the second image, carried naturally \
                in a hand, on the shoulder or across the body depending on the bag's strap, at its real size."
            }
            Zone::Scarf => {
                "Put the scarf from the second image on the person in the first image, wrapped \
                around the neck or draped over the shoulders as the scarf's size suggests, over their clothes."
            }
            Zone::Swimwear => {
                "Dress the person in the first image in the swimwear from the second image, \
                replacing their clothes with it. Keep the cut and coverage of the swimwear exactly as shown."
            }
        }
    }

    /// The full prompt sent to the image model.
    pub fn prompt(self) -> String {
        format!("{} {PRESERVE}", squash(self.task()))
    }
}

/// Collapses the runs of spaces that line continuations leave.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_round_trips_and_has_a_distinct_prompt() {
        let mut prompts = std::collections::HashSet::new();
        for z in Zone::ALL {
            assert_eq!(Zone::parse(z.as_str()), Some(z));
            let p = z.prompt();
            assert!(p.len() < 5000, "kie.ai caps prompts at 5000 characters");
            assert!(!p.contains("  "));
            assert!(p.contains("first image") && p.contains("second image"));
            assert!(prompts.insert(p));
            let json = serde_json::to_string(&z).unwrap();
            assert_eq!(json, format!("\"{}\"", z.as_str()));
        }
        assert_eq!(Zone::parse("hat"), None);
    }
}
