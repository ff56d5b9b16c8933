package mask

// The names masked names are made of: common, and made up together.
var firstNames = []string{
	"Ada", "Alan", "Alex", "Ana", "Ben", "Bo", "Cara", "Chen", "Dan", "Dee",
	"Eli", "Emma", "Finn", "Gia", "Hana", "Ian", "Ida", "Jo", "Kai", "Lea",
	"Leo", "Lin", "Mia", "Max", "Nia", "Noor", "Ola", "Omar", "Pia", "Raj",
	"Rosa", "Sam", "Sara", "Tom", "Uma", "Vera", "Wen", "Yara", "Zoe", "Zane",
}

var lastNames = []string{
	"Abbott", "Baker", "Castro", "Dalton", "Ekström", "Fischer", "García", "Hale", "Ibarra", "Jensen",
	"Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Silva", "Tanaka",
	"Umar", "Varga", "Walsh", "Xu", "Yilmaz", "Zimmer", "Novak", "Ortiz", "Park", "Reyes",
}
